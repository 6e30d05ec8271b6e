TALK "this file does not parse"
IF x = 1 THEN
  TALK "missing END IF"
