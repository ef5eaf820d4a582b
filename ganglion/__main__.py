"""``python -m ganglion`` runs the command-line interface."""

from ganglion.cli.main import main

if __name__ == "__main__":
    main()
