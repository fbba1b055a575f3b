"""fkp: a Kaggle Facial Keypoints Detection pipeline.

Flow: data -> folds -> train (per specialist, per fold) -> out-of-fold and test
predictions -> blend -> submission.
"""
