"""An emoclip plugin: a source, a text tower and a fusion, each one module and one config
(conf/, found through the entry point `emoclip.plugins`: emoclip_example = emoclip_example_plugin)."""
