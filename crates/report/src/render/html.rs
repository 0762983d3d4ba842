//! `report.html` (filled in below).
