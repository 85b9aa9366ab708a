"""What users touch: the command line, the console and widgets, the REST service. Imports anything
below; nothing imports it.
"""
