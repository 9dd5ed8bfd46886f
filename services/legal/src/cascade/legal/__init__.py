"""Cascade legal service: refers eligible cases to litigation and tracks them to judgment and
recovery.
"""
