"""Support code shared by the learner's `exercises/` and the `reference/` solution.

Nothing in here is an exercise: the tokenizer, corpora, token cache, run logging,
checkpoints and the pretraining command line are scaffolding, so both solutions use
the same copy and the kata's steps stay about the model and the loop.
"""
