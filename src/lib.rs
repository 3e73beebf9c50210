//! ssdann
