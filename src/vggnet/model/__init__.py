"""The networks of paper Table 1, their initialisations and their weights."""
