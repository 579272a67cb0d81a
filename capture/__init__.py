"""Doors leads come in through that are more than one API call: the CSV import (reading, cleaning,
merging, delivering to the lead workflows, resuming)."""
