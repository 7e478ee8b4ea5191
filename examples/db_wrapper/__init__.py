"""db_wrapper: SQLite tables served by Wasm foreign-data-wrapper plugins.

The demo mirrors Supabase Wrappers' Wasm FDWs on SQLite, through apsw virtual
tables: ``CREATE VIRTUAL TABLE penguins USING wasm(plugin='csv-source',
file='penguins.csv')``. See ``docs/db-wrapper.md``; run it with
``python -m examples.db_wrapper``.
"""
