"""`python -m voicelab`: the same command line as the `voicelab` script."""

from voicelab.surfaces.cli.main import entry

if __name__ == "__main__":
    entry()
