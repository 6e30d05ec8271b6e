TALK "Counting forever..."
n = 0
DO WHILE n >= 0
    n = n + 1
LOOP
TALK "never said"
