"""Stored runs drawn: charts (matplotlib) and the report notebook rendered to self-contained HTML.
Imports spec and lab.
"""
