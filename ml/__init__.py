"""The ML library that activities call: dataset parsing, optimization, training, evaluation, reports.

Plain functions and classes: no Temporal or HTTP imports here.
"""
