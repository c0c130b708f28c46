/* stop.h - stop strings over streamed text, as llama.cpp's server does them:
 * text that could still be the start of a stop string is held back until it
 * either completes the stop string (generation ends there, the stop string
 * itself is not returned) or can no longer match.
 * Pure functions; any thread. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Scan text[0, len) (everything generated so far). Returns how many leading
 * bytes are final: with *hit false, bytes that cannot be part of a stop
 * string; with *hit true, the bytes before the earliest full stop string. */
size_t stop_scan(const char *text, size_t len, const char *const *stops, int n_stops, bool *hit);
