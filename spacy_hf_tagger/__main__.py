"""`python -m spacy_hf_tagger annotate ...` (see `annotate`)."""

from .jobs.corpus import main

if __name__ == "__main__":
    main()
