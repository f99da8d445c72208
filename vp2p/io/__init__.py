"""Getting things in and out: loading pipelines (toy, local folder, hub id), video files and frame folders, atomic
storage with fingerprints and cache names, and SD-1.5-shaped random models for tests and benchmarks."""
