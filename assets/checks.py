"""The one place where the domain's checks (twin/checks.py) become Dagster's check types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from twin.checks import Check, CheckSpec


def check_specs(asset: dg.AssetKey | Sequence[str], specs: Sequence[CheckSpec], **options: Any) -> list[dg.AssetCheckSpec]:
    """Blocking Dagster check specs for `asset`, named and described by the domain's declarations."""
    return [dg.AssetCheckSpec(spec.name, asset=asset, blocking=True, description=spec.description, **options)
            for spec in specs]


def check_result(check: Check, asset_key: dg.AssetKey | None = None,
                 metadata: dict[str, dg.MetadataValue] | None = None) -> dg.AssetCheckResult:
    """`metadata` adds what only Dagster can show (a markdown table, say) to the check's details."""
    return dg.AssetCheckResult(check_name=check.name, passed=check.passed, asset_key=asset_key,
                               severity=dg.AssetCheckSeverity.ERROR, description=check.summary,
                               metadata={**check.details, **(metadata or {})})


def selected_checks(context: dg.AssetExecutionContext, checks: Sequence[Check],
                    asset_key: dg.AssetKey | None = None) -> list[dg.AssetCheckResult]:
    """The results of the checks this run selected: a run of the asset alone (an automation
    request, a click on the asset) gets none, instead of a warning per unselected check."""
    keys = {key.name: key for key in context.selected_asset_check_keys}
    return [check_result(check, asset_key) for check in checks
            if check.name in keys and (asset_key is None or keys[check.name].asset_key == asset_key)]
