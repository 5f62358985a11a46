package segmentstore

// DataPrefix is where agents write their objects in the store (each object holds
// segments of one or more partitions; FORMAT.md "Objects"). Everything under it that the
// segment index does not name is an orphan, which the sweeper deletes after a grace
// period.
const DataPrefix = "data/"
