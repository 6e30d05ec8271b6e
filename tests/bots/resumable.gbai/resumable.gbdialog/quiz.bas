answers = ""
CALL AskName()
FOR round = 1 TO 2
    CALL AskColor(round)
NEXT round

SUB AskName()
    TALK "What is your name?"
    HEAR name AS NAME
END SUB

SUB AskColor(number)
    TALK "Color number " + number + "?"
    HEAR color AS COLOR
    IF answers = "" THEN
        answers = color
    ELSE
        answers = answers + ", " + color
    END IF
END SUB
