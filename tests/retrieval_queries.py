"""The labelled query set on the sample corpus: questions a reader would ask, written by the project
(none copies a title), each with the documents that answer it. 44 questions: 12 name an author,
6 a category, 6 a time. Used by tests/test_retrieval_quality.py (the CI threshold) and
bench/retrieval.py (the quality table in docs/benchmarks.md). OFF_TOPIC questions have no answer
in the corpus; they set RELEVANCE_THRESHOLD from below."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MAYA = "https://medium.com/@mayalindqvist/"
MAYA_SUB = "https://mayalindqvist.substack.com/p/"
MAYA_LI = "https://www.linkedin.com/posts/mayalindqvist_"
PRIYA = "https://medium.com/@priyaraman/"
PRIYA_BLOG = "https://priyamakesgames.dev/blog/"
PRIYA_LI = "https://www.linkedin.com/posts/priyaraman_"
TOMAS = "https://tomasherrera.blog/"
TOMAS_SUB = "https://mareaviva.substack.com/p/"
TOMAS_LI = "https://www.linkedin.com/posts/tomasherrera_"
# the day the set was labelled: "last year" in a question means 2024
TODAY = date(2025, 11, 1)


@dataclass(frozen=True)
class LabelledQuery:
    question: str
    relevant: frozenset[str]  # document urls that answer it
    names: tuple[str, ...] = ()  # what the question names besides its topic: author, category, time


def _q(question: str, *urls: str, names: tuple[str, ...] = ()) -> LabelledQuery:
    return LabelledQuery(question, frozenset(urls), names)


QUERIES: list[LabelledQuery] = [
    # topic only
    _q("How do I keep Postgres tables from bloating when autovacuum falls behind?",
       MAYA + "postgres-vacuum-table-bloat-field-guide"),
    _q("how can a backfill be rerun safely without double counting rows",
       MAYA_SUB + "idempotent-backfills-rerun-march"),
    _q("incremental loads that lose late-arriving rows because of the high-water mark",
       MAYA + "watermarks-incremental-loads"),
    _q("publishing Kafka events reliably when the database commit and the message send can fail separately",
       MAYA_SUB + "outbox-pattern-logical-replication", MAYA_LI + "exactly-once-is-a-design"),
    _q("agreements between producers and consumers of a table about its schema",
       MAYA + "data-contracts-without-the-hype"),
    _q("what makes an incident playbook usable by a tired engineer in the middle of the night",
       MAYA_SUB + "runbooks-that-work-at-3am", MAYA_LI + "on-call-handover-ritual"),
    _q("splitting a table with billions of rows into ranges by month",
       MAYA + "partitioning-large-postgres-tables"),
    _q("keeping history of a customer's changing city in a dimension table",
       MAYA + "slowly-changing-dimensions-type-2"),
    _q("daylight saving switch causes a doubled hour in hourly dashboards",
       MAYA + "timezone-bugs-in-data-pipelines"),
    _q("why a NOT IN subquery returns no rows when the list has a null",
       MAYA_LI + "not-in-null-trap"),
    _q("sessions stuck idle in transaction holding locks",
       MAYA_LI + "idle-in-transaction", MAYA_LI + "migration-lock-timeout"),
    _q("growing caves from random noise with neighbour-counting rules",
       PRIYA + "cellular-automata-caves-from-noise"),
    _q("placing tiles so that neighbouring tiles always fit together, like a sudoku",
       PRIYA_BLOG + "wave-function-collapse-sudoku-for-tiles"),
    _q("entity component system scheduling in Bevy explained with a kitchen",
       PRIYA + "bevy-ecs-mise-en-place"),
    _q("screen shake, hit pause and particles that make a game feel good",
       PRIYA_BLOG + "screen-shake-and-juice"),
    _q("old player progress fails to load after a patch adds fields, migrating save data",
       PRIYA + "versioning-save-files-rust-serde"),
    _q("my ships path straight through islands near the map edge, offset vs axial coordinates",
       PRIYA + "astar-pathfinding-hex-grids"),
    _q("keeping a 48-hour jam game small enough to finish",
       PRIYA_BLOG + "game-jam-scope-control", PRIYA_LI + "ggj-2024-chai-spill"),
    _q("choosing a small colour palette and animating sprites",
       PRIYA + "pixel-art-palette-and-animation-workflow", PRIYA_LI + "hue-shifting-tip"),
    _q("corals turning white when the water stays too warm for weeks",
       TOMAS + "the-summer-the-reef-turned-white", TOMAS_LI + "marine-heatwave-bleaching-alert"),
    _q("sea urchins eating a kelp forest down to bare rock",
       TOMAS_SUB + "urchin-barrens-kelp-forest", TOMAS_LI + "urchin-removal-kelp-recovery-paper"),
    _q("tiny swimming snails whose shells dissolve as the ocean becomes more acidic",
       TOMAS + "sea-butterflies-souring-water"),
    _q("why do parrotfish poop out white sand and why should fishers stop spearing them",
       TOMAS + "the-parrotfish-who-made-the-beach", TOMAS_LI + "bicolor-parrotfish-fish-of-the-week"),
    _q("mangrove roots as a nursery for young fish",
       TOMAS_SUB + "cradle-of-roots-mangroves-magdalena", TOMAS_LI + "mangrove-snapper-thesis-defense"),
    _q("dinoflagellates glowing blue when you wave your hand underwater in the dark",
       TOMAS + "turning-off-the-torch-night-dive"),
    _q("gillnets drowning vaquita porpoises in the upper gulf",
       TOMAS_SUB + "nets-porpoises-pangas-san-felipe"),
    _q("microplastics collected by towing a fine net behind the boat",
       TOMAS + "what-the-manta-trawl-brings-up"),
    _q("sex of baby sea turtles depends on how hot the nest sand gets",
       TOMAS_SUB + "waiting-for-turtles-todos-santos", TOMAS_LI + "olive-ridley-hatchlings-todos-santos"),
    # naming an author
    _q("What did Maya Lindqvist say about how big a batch should be?", MAYA_LI + "lagom-batch-size",
       names=("author",)),
    _q("What does Lindqvist think about streaming pipelines?", MAYA_LI + "streaming-is-not-a-personality",
       names=("author",)),
    _q("What did Maya write about mentoring junior engineers?", MAYA_SUB + "mentoring-junior-data-engineers",
       names=("author",)),
    _q("What did Priya Raman learn from her launch numbers?",
       PRIYA + "lanternmoss-launch-week-numbers", PRIYA_LI + "lanternmoss-one-year-numbers", names=("author",)),
    _q("How does Priya pace a solo project without burning out?",
       PRIYA_BLOG + "pacing-solo-project-without-burnout", names=("author",)),
    _q("What did Raman learn from watching strangers play?",
       PRIYA_BLOG + "playtesting-with-strangers", PRIYA_LI + "record-your-playtests", names=("author",)),
    _q("What does Tomás Herrera say about writing grant proposals?",
       TOMAS + "grant-proposals-field-scientist", names=("author",)),
    _q("How does Tomas teach volunteers to count fish?",
       TOMAS_SUB + "teaching-strangers-to-count-fish", TOMAS_LI + "volunteer-uvc-course-graduation",
       names=("author",)),
    _q("What did Herrera write about sharing data with fishing communities?",
       TOMAS_LI + "sharing-results-fishing-communities", TOMAS_LI + "open-reef-fish-survey-dataset",
       names=("author",)),
    # naming an author and a category
    _q("In her posts, what did Maya say about code review?", MAYA_LI + "fika-code-review",
       names=("author", "category")),
    _q("Priya's posts about regional pricing", PRIYA_LI + "india-regional-pricing",
       names=("author", "category")),
    _q("Tomás's posts about a broken boat engine", TOMAS_LI + "outboard-failure-field-life",
       names=("author", "category")),
    # naming a category
    _q("an article on Christmas trees recycled as coral nursery frames", TOMAS_SUB + "coral-nursery-notes",
       names=("category",)),
    _q("a post about the cheapest data quality check there is", MAYA_LI + "row-count-checks",
       names=("category",)),
    _q("the repository code that smooths a cave with automata steps",
       "https://github.com/priyaraman/cavern-gen/blob/main/src/automata.rs", names=("category",)),
    # naming a time
    _q("What did Maya post in March 2025 about turning things off?", MAYA_LI + "turned-off-warehouse-cluster",
       names=("author", "category", "time")),
    _q("What did Priya write in 2022 about tiles?", PRIYA_BLOG + "wave-function-collapse-sudoku-for-tiles",
       names=("author", "time")),
    _q("coral nursery survival after the heat, posted last year or later",
       TOMAS_LI + "coral-nursery-survival-update", TOMAS_SUB + "coral-nursery-notes", names=("time",)),
    _q("What did Tomas publish since 2025 about turtles?", TOMAS_SUB + "waiting-for-turtles-todos-santos",
       names=("author", "time")),
    _q("the difficulty curve of a roguelike, written in 2023", PRIYA_BLOG + "roguelike-difficulty-curve-staircase",
       names=("time",)),
]

OFF_TOPIC = [
    "What is the weather in Lisbon tomorrow?",
    "Who won the football World Cup in 1998?",
    "Give me a recipe for banana bread",
    "How do I file my income taxes in Germany?",
    "What is the capital of Australia?",
    "Recommend a good laptop for video editing",
    "How many moons does Jupiter have?",
    "Translate good morning into Japanese",
]
