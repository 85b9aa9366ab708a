"""What a test is: the data models, loading and validating files, {{variables}}, persona -> prose, the
check registry, the error hierarchy. Imports nothing else of voicelab.
"""
