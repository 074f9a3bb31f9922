//! cron (placeholder)
