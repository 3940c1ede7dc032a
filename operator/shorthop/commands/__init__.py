"""Subcommands of the ``shorthop`` CLI, one module each (see ``shorthop.cli``)."""
