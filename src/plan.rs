//! From a repository checkout to an ordered plan of rendered stages.
