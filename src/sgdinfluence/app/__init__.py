"""The application on top of the core: dataset registry and users' files, the paper's models,
the registry of scoring methods, cleansing, reports, experiments and the command line."""
