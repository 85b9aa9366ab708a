"""Many calls: the run store, planning, batch, experiment, mutate, compare, statistics, tables, JUnit.
Imports spec, audio, harness and local (to start a backend).
"""
