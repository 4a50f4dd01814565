"""Paper results tables: specs (`tables`), the job runner and results store (`runner`), aggregation (`aggregate`)."""
