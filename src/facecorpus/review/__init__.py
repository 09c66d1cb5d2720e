"""The reviewer command: sample generated QA, judge it in a terminal UI, summarise acceptance and agreement."""
