//! errand's distributed task store on Redis.
