SUBSTACK = [
("Your Evaluation Set Is a Product", "Treat the examples you grade models on like code you ship", "Mar 04, 2024", "evaluation-set-is-a-product", """Every team I join has a folder called `eval` and nobody owns it. Someone wrote two hundred examples during a hackathon, the model got better, and the examples stayed exactly where they were while the product moved on without them.

## The set drifts before the model does

An evaluation set describes the questions you expected users to ask on the day you wrote it. Six months later the users ask different things. If the set does not move, every new model looks better on yesterday's problems and nobody notices the new ones.

So I give the set an owner, a changelog and a review, the same as a service. New failure reported by support? It becomes an example the same week, with the ticket linked.

## Three rules I keep

- Every example has a reason to exist, written next to it.
- Nothing is deleted; examples are retired with a date.
- The set is versioned, and every score says which version it used.

A score without the version of the set is a number without a unit. I would not accept a latency figure without milliseconds, and I stopped accepting accuracy without a version."""),
("Backfills Are Where Pipelines Go to Lie", "", "Apr 22, 2024", "backfills-lie", """The first run of a pipeline is honest. It reads what exists and writes what it computed. The trouble starts the day someone asks for last year as well.

A backfill replays history with today's code. If today's code reads a table that did not exist last March, or a feature that was computed differently back then, the backfill quietly invents a past that never happened. Training on it teaches the model a world it will never see in production.

## What I check before pressing the button

1. Which inputs are point-in-time, and which only hold the latest value?
2. Does the code branch on the current date anywhere?
3. Will the backfill overwrite partitions that downstream jobs already consumed?

The third question is the one that wakes people up at night. A model trained last week on the old partitions is now attached to data that has been rewritten under it.

## Partition keys are promises

I write partitions by day and never in place. A backfill writes a new version of the partition and a pointer moves when it finishes. If it goes wrong, the pointer moves back. Storage is cheaper than an afternoon of explaining to a product manager why the dashboard changed its mind about March."""),
("Notes From Moving Our Training Jobs to Spot Machines", "", "Jun 10, 2024", "training-on-spot", """We cut our training bill by more than half last quarter and I want to write down what it cost us in engineering time, because the blog posts that promised the savings skipped that part.

Spot machines disappear with two minutes of warning. A training job that cannot resume from a checkpoint turns into a job that restarts from zero, and a job that restarts from zero on a busy afternoon can run all week.

## Checkpoints are the whole game

We save a checkpoint every fifteen minutes to object storage, together with the data loader's position and the random seeds. Resuming then means reading three things and skipping a known number of batches. We tested it by killing machines on purpose during a normal week, which found two bugs before production found them for us.

## What I would do again

- Make resumption the default path, not the recovery path.
- Log the checkpoint age as a metric and alert when it grows.
- Keep one on-demand machine for the evaluation step, which is short and must finish.

The savings were real. So was the month we spent earning them."""),
]
MEDIUM = [
("Feature Stores Without the Ceremony", "You may already own most of one", "Jan 15, 2024", "feature-stores-without-ceremony", """People ask me which feature store to buy before they have asked what they need one for. Most teams need two things: the same feature definition in training and serving, and the value a feature had at a past moment.

The first is a code problem. Put the definition in one module that both the training job and the service import. If the service reimplements it in another language, you have two features with one name, and they will drift.

## Point in time is the hard part

The second need is about time. When you build a training row for an event last Tuesday, every feature must be the value known last Tuesday, not the value known now. A join on the latest value leaks the future into the past, and the offline score rises while the online one falls.

A table with `valid_from` and `valid_to` columns and an as-of join gets you a long way. It is boring SQL, and boring SQL is something the whole team can review.

## When to buy

Buy when you have many teams sharing features and nobody can say who owns which. Until then, a module and a well-kept table are a feature store with fewer meetings."""),
("The Smallest Useful Model Registry", "", "Feb 27, 2024", "smallest-model-registry", """A model registry answers three questions: what is running, what was it trained on, and who approved it. Everything else is a convenience.

I have seen teams spend a quarter choosing a registry and then store the answers to those questions in a chat channel anyway. The tool was fine. The habit was missing.

## The habit

Every trained model gets a version, a link to the exact dataset snapshot and the commit of the training code. Promotion to production is a separate step with a name attached. Rolling back means moving an alias, not retraining.

Write those three things down for every model and you have a registry, even if it is a table in the database you already run. Later you can move the table into a product with a nicer interface.

## A test for your registry

Pick the model answering requests right now and ask a new colleague to find its training data in under five minutes. If they cannot, the registry is decoration. If they can, most of the remaining work is polish."""),
("Why I Stopped Averaging Metrics Across Slices", "", "May 08, 2024", "stop-averaging-slices", """An average accuracy across all users hides the users the model fails. It is the most common way I have seen a regression ship with everyone's approval.

Last year a new ranking model scored better on our overall metric and worse for people who write in Hungarian, my own first language. They were four percent of the traffic, so the average barely moved. Support noticed before we did.

## Slice first, average later

Now every evaluation report starts with a table of slices: language, device, account age, and whatever the product team worries about this month. A model must not get worse on any slice beyond a tolerance we set in advance, whatever the average says.

## Choosing slices

Start with the slices where a failure would embarrass you in public. Add slices when an incident teaches you one. Remove nothing.

The average is still on the report. It is just no longer the first number anyone reads."""),
]
BLOG = [
("Writing Runbooks for Model Rollbacks", "", "Jul 13, 2024", "runbooks-for-rollbacks", """A rollback plan that lives in someone's head is a plan that goes on holiday. We learned this during an incident on a Friday evening, when the one person who knew how to roll back the ranking model was on a train.

Our runbook now fits on one page. It names the alias to move, the command that moves it, the dashboard that shows whether it worked, and who must be told. It does not explain why the model might be wrong; that is for the review afterwards.

## Practise it

Twice a quarter we roll back a healthy model in the middle of the day, on purpose, and time it. The first drill took forty minutes. The latest took six.

- Keep the previous version warm so the switch is instant.
- Test the runbook with the newest person on the team.
- Update it in the same pull request that changes the deployment."""),
("Data Contracts Are Mostly Conversations", "", "Aug 02, 2024", "data-contracts-conversations", """I like data contracts, but the schema file is the least interesting part of one. The valuable part is the conversation that decides who is allowed to change a column and how much notice they give.

Our analytics team renamed a field on a Tuesday. Three training pipelines failed on Wednesday and one did not fail at all, which was worse, because it filled the new field with nulls and trained on them for a week.

## What our contracts contain

Each contract names an owner, the columns with their meaning in plain words, the freshness we can count on, and the notice period for breaking changes. A check in continuous integration compares the producer's schema with the contract and fails the producer's build, not the consumer's.

The file took an afternoon to write. The meeting that agreed on it took three weeks, and it was the three weeks that fixed the problem."""),
("Monitoring Drift Without Drowning in Alerts", "", "Sep 19, 2024", "drift-without-drowning", """The first drift monitor I set up sent forty alerts on its first day. By the end of the week the whole team had muted the channel, which means we had built an expensive way to be ignored.

Drift statistics are sensitive by design. With enough traffic, every feature drifts a little every day, and a test that flags any change will flag everything.

## What worked for us

We alert on drift only for the ten features the model relies on most, measured by how much the score changes when we shuffle them. For everything else we write a weekly report that a person reads on Monday with coffee.

We also tie every alert to an action. If nobody can say what they would do when an alert fires, the alert becomes a chart on the dashboard instead.

The channel is quiet now. When it speaks, people read it."""),
]
LINKEDIN = [
("2024-03-06 09:12:00", "https://www.linkedin.com/feed/update/urn:li:share:7171000000000000001", "𝗬𝗼𝘂𝗿 𝗲𝘃𝗮𝗹 𝘀𝗲𝘁 𝗶𝘀 𝗮 𝗽𝗿𝗼𝗱𝘂𝗰𝘁.\n\nIf nobody owns the examples you grade models on, they quietly describe last year's users.\n\nGive the set an owner, a changelog and a version. Put the version next to every score.\n\n𝘈 𝘴𝘤𝘰𝘳𝘦 𝘸𝘪𝘵𝘩𝘰𝘶𝘵 𝘢 𝘷𝘦𝘳𝘴𝘪𝘰𝘯 𝘪𝘴 𝘢 𝘯𝘶𝘮𝘣𝘦𝘳 𝘸𝘪𝘵𝘩𝘰𝘶𝘵 𝘢 𝘶𝘯𝘪𝘵."),
("2024-04-24 17:40:00", "https://www.linkedin.com/feed/update/urn:li:share:7189000000000000002", "Backfills replay history with today's code. ⚠️\n\nBefore you press the button, ask:\n1. Which inputs only hold the latest value?\n2. Does the code branch on today's date?\n3. Which downstream jobs already consumed the partitions you will overwrite?\n\n𝗪𝗿𝗶𝘁𝗲 𝗻𝗲𝘄 𝗽𝗮𝗿𝘁𝗶𝘁𝗶𝗼𝗻 𝘃𝗲𝗿𝘀𝗶𝗼𝗻𝘀, 𝗻𝗲𝘃𝗲𝗿 𝗶𝗻 𝗽𝗹𝗮𝗰𝗲."),
("2024-06-12 08:05:00", "https://www.linkedin.com/feed/update/urn:li:share:7206000000000000003", "We moved training to spot machines and halved the bill. 📉\n\nThe part the blog posts skip: a month of making resumption the default path. Checkpoints every 15 minutes, the loader position saved with them, machines killed on purpose to prove it works.\n\n𝗦𝗮𝘃𝗶𝗻𝗴𝘀 𝗮𝗿𝗲 𝗲𝗮𝗿𝗻𝗲𝗱, 𝗻𝗼𝘁 𝗳𝗼𝘂𝗻𝗱."),
("2024-07-15 12:30:00", "https://www.linkedin.com/feed/update/urn:li:share:7218000000000000004", "Rollback drill today: six minutes from \"something is off\" to the previous model serving again. The first drill took forty.\n\nWhat changed: a one-page runbook, the previous version kept warm, and the newest colleague running the drill.\n\n𝘗𝘳𝘢𝘤𝘵𝘪𝘴𝘦 𝘵𝘩𝘦 𝘳𝘰𝘭𝘭𝘣𝘢𝘤𝘬 𝘸𝘩𝘪𝘭𝘦 𝘯𝘰𝘵𝘩𝘪𝘯𝘨 𝘪𝘴 𝘣𝘶𝘳𝘯𝘪𝘯𝘨."),
("2024-09-20 10:00:00", "https://www.linkedin.com/feed/update/urn:li:share:7242000000000000005", "Our first drift monitor sent 40 alerts on day one. By Friday the channel was muted.\n\nNow: alerts only for the ten features the model leans on most, and a weekly report for the rest. Every alert names the action someone takes when it fires.\n\n𝗔𝗻 𝗮𝗹𝗲𝗿𝘁 𝘄𝗶𝘁𝗵𝗼𝘂𝘁 𝗮𝗻 𝗮𝗰𝘁𝗶𝗼𝗻 𝗶𝘀 𝗮 𝗰𝗵𝗮𝗿𝘁. #mlops #monitoring"),
]
