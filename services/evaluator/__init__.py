"""The evaluator: scores runs automatically with judges, embeddings and rules."""
