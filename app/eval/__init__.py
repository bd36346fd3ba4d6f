"""Retrieval evaluation on a BEIR-layout dataset: every search mode and fusion, scored and timed.

``dataset`` reads the files, ``metrics`` holds the pure scoring functions, ``runner`` ingests the corpus
through the container's IngestService and runs the queries through its SearchService (so it measures
whichever backend and models the settings choose), ``report`` renders the results.
"""
