//! Confidence cascades: calibration.
