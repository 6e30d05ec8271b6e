' A HEAR inside a loop, inside a SUB, inside a CALLed dialog: each question may be answered
' after the server restarts, and the dialog goes on exactly there.
TALK "Welcome to the quiz."
CALL "quiz.bas"
TALK "Thanks, " + name + ". Your answers: " + answers
