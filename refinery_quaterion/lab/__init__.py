"""The lab: end-to-end cases (recipes run on a refinery project) for the examples and benchmarks.

Nothing in the library's stages imports this package; it sits on top of them like the CLI.
"""
