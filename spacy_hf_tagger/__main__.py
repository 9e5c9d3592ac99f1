"""`python -m spacy_hf_tagger annotate ...` (see `annotate`)."""

from .annotate import main

if __name__ == "__main__":
    main()
