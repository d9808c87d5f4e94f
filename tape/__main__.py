"""`python -m tape`: the command line, as the `tape` script runs it."""

from tape.cli import main

if __name__ == "__main__":
    main()
