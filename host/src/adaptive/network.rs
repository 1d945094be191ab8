//! Gate networks: training.
