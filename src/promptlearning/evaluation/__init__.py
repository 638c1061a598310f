"""Evaluation metrics: classification (accuracy, F1, calibration error) and text (SQuAD, ROUGE, BLEU, chrF,
distinct-n)."""
