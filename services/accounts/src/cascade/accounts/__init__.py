"""Cascade accounts service: turns core banking's payment events into days past due, buckets
and delinquency events.
"""
