"""Reports and experiment runners: evaluation of an exported model, the demo showcase, the
scoring back-end report, and the markdown/JSON writers they share."""
