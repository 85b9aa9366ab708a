"""The `voicelab` command line: run, call, serve, report (main), experiment, compare, mutate (lab), api
(api).
"""
