"""Cascade notifications service: contacts debtors only when the contact rules allow, and keeps
the contact ledger.
"""
