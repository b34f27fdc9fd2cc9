"""Fact checks: judging an answer right or wrong by assertions about its facts, and deriving them from a reference
answer.
"""
