"""Long-sequence cost of attention: timing and memory of each variant as lengths grow."""
