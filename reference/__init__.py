"""The reference solution of tinygpt-kata. Instructors only: not in the learner handout."""
