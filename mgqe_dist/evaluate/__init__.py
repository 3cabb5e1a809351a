"""Evaluation: full-ranking HR/NDCG with seen-item masking."""
