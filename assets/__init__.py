"""Software-defined assets, thin: read, call the `twin` domain package, write, report."""
