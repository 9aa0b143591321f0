"""`twin train` and `twin models`: a twin's fine-tunes, their evaluations and aliases."""

from __future__ import annotations

import sys
from typing import Literal

from orchestration.cli.common import known_twin, platform_database
from twin.errors import TwinError
from twin.settings import Settings

Profile = Literal["cpu-demo", "gpu"]


def train(settings: Settings, twin: str, profile: Profile = "cpu-demo", max_steps: int | None = None) -> int:
    from orchestration.runs import train_twin

    with platform_database(settings).connect() as conn:
        slug = known_twin(conn, twin)
    print(f"training {slug} with profile {profile} (dataset -> Axolotl LoRA -> evaluation -> promotion)...")
    outcome = train_twin(settings, slug, profile, max_steps)
    for line in outcome.summary_lines():
        print(line)
    if not outcome.success:
        print(f"error: {slug}: {outcome.error}", file=sys.stderr)
        print("  fix: see the run in the Dagster UI (twin ui) for the full log", file=sys.stderr)
        return 1
    return 0


def models(settings: Settings, twin: str) -> int:
    from training.registry import registered_model_name

    with platform_database(settings).connect() as conn:
        slug = known_twin(conn, twin)
        rows = conn.execute(
            """SELECT m.version, m.profile, m.train_steps, m.train_loss, left(m.dataset_fingerprint, 16), m.created_at,
                      e.perplexity, e.reference, e.reference_perplexity, e.attribution_share,
                      e.reference_attribution_share, e.delta, e.promoted,
                      EXISTS (SELECT 1 FROM promotions p WHERE p.registered_model = m.registered_model AND p.version = m.version)
               FROM model_versions m
               LEFT JOIN LATERAL (SELECT * FROM evaluations e WHERE e.registered_model = m.registered_model
                                  AND e.version = m.version ORDER BY e.id DESC LIMIT 1) e ON true
               WHERE m.twin = %s ORDER BY m.version""",
            (slug,),
        ).fetchall()
    if not rows:
        print(f"{slug} has no fine-tuned models yet; run: twin train --twin {slug}")
        return 0
    aliases = _aliases(settings, slug)
    print(f"{registered_model_name(slug)} (MLflow registry)")
    print(f"{'version':>7}  {'aliases':<20} {'profile':<9} {'steps':>5} {'loss':>6}  {'dataset':<16}  {'ppl':>7} {'author':>6} "
          f"{'delta':>6}  vs {'reference':<14} {'ppl':>7} {'author':>6}  gate")
    for version, profile, steps, loss, dataset, _, ppl, reference, ref_ppl, share, ref_share, delta, promoted, _ in rows:
        gate = "-" if promoted is None else ("passed" if promoted else "refused")
        print(f"{version:>7}  {','.join(aliases.get(str(version), [])) or '-':<20} {profile:<9} {steps:>5} "
              f"{(loss or 0):>6.3f}  {dataset:<16}  {_num(ppl):>7} {_pct(share):>6} {_num(delta, 3):>6}  vs "
              f"{reference or '-':<14} {_num(ref_ppl):>7} {_pct(ref_share):>6}  {gate}")
    print("author: share of held-out answers attributed to the author (- when not measurable); "
          "delta: Burrows' Delta to the author's held-out text (lower is closer)")
    return 0


def _aliases(settings: Settings, twin: str) -> dict[str, list[str]]:
    from training.registry import configure_mlflow, registered_model_name

    try:
        model = configure_mlflow(settings).get_registered_model(registered_model_name(twin))
    except TwinError:
        raise
    except Exception:  # the twin has rows but MLflow lost the model: show no aliases
        return {}
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    return aliases


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
