"""The aggregator: stores runs, rolls them up by prompt and app version, and answers the query API."""
