"""One partition per twin (author); added by imports and by `twin materialize`."""

import dagster as dg

twin_partitions = dg.DynamicPartitionsDefinition(name="twins")
