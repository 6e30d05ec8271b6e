' Fails at run time when the user answers 0: division by zero.
TALK "Give me a number."
HEAR n AS INTEGER
x = 10 / n
TALK "10 / ${n} = ${x}"
