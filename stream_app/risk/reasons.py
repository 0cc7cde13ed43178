"""Why a customer is at risk, in the business's words: every model feature
maps to one of DOMAIN.md's reason categories, so a score's top contributions
become a reason a customer-success team can act on (alerts.py picks the play).

The lowest module of the risk step: features, health and the model name
their reasons with it, and alerts turn them into plays.
"""

from __future__ import annotations

#: Reason categories. The seven of DOMAIN.md's signals, plus `cancellation`
#: (already cancelled, not yet churned: the most actionable group), `renewal`
#: (renewal close with low engagement) and `account` (profile facts such as
#: tenure or plan that explain a score but are not a problem to fix).
CATEGORIES: tuple[str, ...] = (
    "price", "product_fit", "user_experience", "customer_service", "onboarding",
    "payment", "inactivity", "cancellation", "renewal", "account",
)

#: Every model feature -> the reason category it speaks for.
REASON_CATEGORY: dict[str, str] = {
    "tenure_days": "account",
    "early_life": "onboarding",
    "mrr": "account",
    "log_mrr": "account",
    "plan_tier": "account",
    "contractual": "account",
    "days_since_last_activity": "inactivity",
    "inactive_log_days": "inactivity",
    "no_activity_7d": "inactivity",
    "usage_7d": "product_fit",
    "usage_30d": "product_fit",
    "usage_90d": "product_fit",
    "usage_trend": "product_fit",
    "usage_trend_90d": "product_fit",
    "usage_trend_log": "product_fit",
    "usage_trend_90d_log": "product_fit",
    "active_days_30d": "inactivity",
    "stickiness": "inactivity",
    "feature_breadth": "product_fit",
    "sessions_first_14d": "onboarding",
    "onboarding_rate": "onboarding",
    "onboarding_incomplete": "onboarding",
    "open_tickets": "customer_service",
    "tickets_30d": "customer_service",
    "csat": "customer_service",
    "csat_known": "customer_service",
    "csat_low": "customer_service",
    "nps": "user_experience",
    "nps_known": "user_experience",
    "nps_detractor": "user_experience",
    "tickets_90d": "customer_service",
    "ticket_trend_log": "customer_service",
    "days_since_last_ticket": "customer_service",
    "csat_mean": "customer_service",
    "csat_answers": "customer_service",
    "bad_csat_recent": "customer_service",
    "overdue_tickets": "customer_service",
    "oldest_open_ticket_days": "customer_service",
    "failed_payments": "payment",
    "dunning_days": "payment",
    "in_dunning": "payment",
    "payment_failures_total": "payment",
    "days_since_payment_failure": "payment",
    "recent_downgrade": "price",
    "price_increase_recent": "price",
    "days_since_price_change": "price",
    "price_change_90d": "price",
    "price_change_log_ratio": "price",
    "days_since_price_increase": "price",
    "days_to_renewal": "renewal",
    "renewal_within_7d": "renewal",
    "cancel_pending": "cancellation",
    "recency_days": "inactivity",
    "frequency": "inactivity",
    "monetary": "account",
    "mean_gap_days": "inactivity",
    "recency_gap_ratio": "inactivity",
    "p_alive": "inactivity",
    "lapse_within_30d": "inactivity",
    "bgnbd_no_purchase": "inactivity",
    "bgnbd_log_no_purchase": "inactivity",
    "log_recency_days": "inactivity",
    "log_repeat_days": "inactivity",
    "log_buyer_age_days": "account",
}
