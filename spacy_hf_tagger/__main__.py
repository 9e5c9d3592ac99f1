"""`python -m spacy_hf_tagger COMMAND ...` (see `cli`)."""

from .cli import main

if __name__ == "__main__":
    main()
