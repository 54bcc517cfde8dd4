"""Phrase banks for synthetic calls: what agents and customers say, in two disjoint wordings.

`train` is the bank scorecards and models may be developed against; `heldout` words every
compliance phrase differently and serves the benchmark, so a scorecard is judged on phrasings its
author never saw. Templates take `{company}`, `{agent}`, `{customer}`, `{first}`, `{dob}`,
`{digits}`, `{code}`. Numbers are spelled out: eSpeak reads digits as whole numbers, and the
agent's speech rate label counts the script's words.
"""

from __future__ import annotations

from dataclasses import dataclass

from callqa.config import EMOTIONS  # noqa: F401 - the banks are keyed by these


@dataclass(frozen=True)
class Topic:
    """One customer problem and how the agent handles it."""

    problem: tuple[str, ...]  # customer states the issue (one is picked)
    steps: tuple[str, str, str]  # agent: findings, action, outcome (in order)
    question: tuple[str, ...]  # customer follow-up question
    answer: tuple[str, ...]  # agent answer to it


@dataclass(frozen=True)
class PhraseBank:
    companies: tuple[str, ...]
    agent_names: tuple[str, ...]
    customer_names: tuple[str, ...]
    greetings: tuple[str, ...]
    no_greeting: tuple[str, ...]  # agent's first words when the greeting is omitted
    disclosures: tuple[str, ...]
    identity: tuple[tuple[str, str], ...]  # (agent request, customer answer)
    identity_ok: tuple[str, ...]  # agent confirms the details
    closings: tuple[str, ...]
    no_closing: tuple[str, ...]  # agent's last words when the closing is omitted
    forbidden: tuple[str, ...]  # rude, abusive or dismissive agent language, profanity
    hold: tuple[str, ...]  # agent, before looking something up
    resume: tuple[str, ...]  # agent, after it (no thanks-for-waiting: reads as a closing)
    interrupt: tuple[str, ...]  # agent cutting in (starts a turn that overlaps the customer)
    empathy: dict[str, tuple[str, ...]]  # by customer emotion
    opener: dict[str, tuple[str, ...]]  # customer, by emotion, before the problem
    reaction: dict[str, tuple[str, ...]]  # customer, by emotion, after agent steps
    thanks: dict[str, tuple[str, ...]]  # customer, by emotion, after the fix
    goodbye: dict[str, tuple[str, ...]]  # customer, by emotion, after the closing
    trailing: tuple[str, ...]  # customer's last words when the agent did not close
    topics: tuple[Topic, ...]


DAYS = ("third", "ninth", "twelfth", "fifteenth", "twenty first", "twenty eighth", "first")
MONTHS = ("January", "March", "April", "June", "August", "October", "November", "December")
YEARS = (
    "nineteen seventy four",
    "nineteen eighty two",
    "nineteen ninety",
    "nineteen sixty eight",
    "two thousand and one",
    "nineteen ninety six",
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

TRAIN = PhraseBank(
    companies=(
        "Northwind Mobile",
        "Brightline Energy",
        "Cedar Bank",
        "Bluewave Broadband",
        "Summit Insurance",
        "Pinecrest Water",
        "Orbit Airways",
        "Maple Home Appliances",
    ),
    agent_names=("Dana", "Marcus", "Sofia", "Owen", "Grace", "Hector", "Leila", "Tobias"),
    customer_names=(
        "Robert Hayes",
        "Linda Carter",
        "Samuel Ortiz",
        "Emily Chen",
        "Thomas Reed",
        "Aisha Bello",
        "George Wallace",
        "Nina Petrova",
    ),
    greetings=(
        "Hello, {company} customer care, {agent} speaking. What can I help with?",
        "Good morning, thanks for ringing {company}. I'm {agent}, what seems to be the problem?",
        "Hi, you've got {company} support, this is {agent}. How can I help you today?",
        "Good afternoon and thank you for calling {company}, my name is {agent}.",
        "Hello there, {agent} here at {company}. What can I do for you this morning?",
        "Thanks for phoning {company}, you're speaking with {agent}. How may I assist?",
        "Hi, welcome to {company}. I'm {agent}, and I'll be looking after you today.",
        "Good evening, {company} help desk, {agent} on the line. How can I help you?",
        "Hello, this is {agent} from {company}. Thanks for getting in touch, what's going on?",
        "Morning, {company}, {agent} speaking. What can I sort out for you?",
    ),
    no_greeting=(
        "Yes, go ahead.",
        "Okay, what's the issue?",
        "Right, what's wrong?",
        "Uh, yeah, what is it?",
        "Go on then.",
        "Yep, what's this about?",
    ),
    disclosures=(
        "Before we start, I should mention that this call is recorded for quality purposes.",
        "Just so you're aware, we record all calls to help with staff training.",
        "Please note that this conversation is being recorded and may be reviewed.",
        "I have to let you know our calls are monitored and kept on file.",
        "Quick note, this line is recorded for security and training.",
        "For your information, everything on this call is being recorded.",
        "You should know that we keep a recording of every call like this one.",
        "This call is being recorded today, just so you know.",
    ),
    identity=(
        (
            "Before I open the account, can I get your full name and date of birth?",
            "Sure, it's {customer}, born on the {dob}.",
        ),
        (
            "I need to confirm who I'm speaking with, so what's your name and the postcode?",
            "It's {customer}, and the postcode is {code}.",
        ),
        (
            "Could you give me the last four digits of the card linked to the account?",
            "Yes, it ends in {digits}.",
        ),
        (
            "For security, can you tell me the answer to your security question?",
            "The name of my first school, which was Elm Park.",
        ),
        (
            "Can I take your account number and your date of birth, please?",
            "The account number is {digits} {digits}, and I was born on the {dob}.",
        ),
        (
            "First I need to check your identity. What's the email address on the account?",
            "It's {first} at mailbox dot com.",
        ),
        (
            "Can you confirm the first line of your address and your full name for me?",
            "Fourteen Station Road, and I'm {customer}.",
        ),
        (
            "I just need to verify a couple of details. What's your phone number and birthday?",
            "It's oh seven seven {digits} {digits}, and my birthday is the {dob}.",
        ),
    ),
    identity_ok=(
        "Thank you, that all matches.",
        "Perfect, you're verified.",
        "Great, thanks, I can see your account now.",
        "Lovely, that's all correct.",
        "Thanks, that checks out.",
    ),
    closings=(
        "If that's everything, thanks for calling {company} and have a good rest of your day.",
        "Glad we got that sorted. Thank you for your call, and take care.",
        "Anything else I can help with before you go? Otherwise, have a great evening.",
        "Thanks so much for your time today, {first}. Goodbye for now.",
        "That's all done then. Thank you for choosing {company}, bye bye.",
        "Is there something else I could look at for you? If not, have a nice day.",
        "Right, you're all set. Thanks for calling, and have a good weekend.",
        "Great talking with you, {first}. Thanks again, and goodbye.",
    ),
    no_closing=(
        "Okay, the ticket is logged.",
        "Right, the change is in the system now.",
        "That's been updated on my end.",
        "The note is on your account now.",
        "Fine, it's done.",
        "So that's processed.",
    ),
    forbidden=(
        "Honestly, that's not my problem.",
        "Look, I haven't got all day for this.",
        "Are you even listening? I already told you that.",
        "That's a stupid question.",
        "Stop whining and let me do my job.",
        "What the hell did you expect to happen?",
        "This damn account is a total mess, just like the last one.",
        "Shut up for a second and let me finish.",
        "You people never read anything we send you.",
        "I couldn't care less how long you've been waiting.",
        "Well, that's your own fault for not paying on time.",
        "Oh for crying out loud, just listen to me.",
    ),
    hold=(
        "Let me pull up your account, bear with me a moment.",
        "Give me a second while I check that.",
        "One moment, I'm just looking into it.",
        "Hang on, let me check the system.",
        "Let me have a quick look at the history there.",
    ),
    resume=(
        "Okay, I've got it up now.",
        "Right, I'm back with you.",
        "Okay, so here's what I found.",
        "Alright, I can see what happened.",
        "Okay, that's loaded.",
    ),
    interrupt=(
        "Okay, okay, I understand what you're saying there",
        "Yes, I know, I can see exactly what has gone wrong here",
        "Sorry, hold on, let me just explain what I can see on the account",
        "Right, I've got it, I've got it, let me take it from here",
    ),
    empathy={
        "angry": (
            "I completely understand your frustration, and I'm sorry about that.",
            "I hear you, that really shouldn't have happened.",
            "I'm sorry you've had to call again about this.",
        ),
        "happy": (
            "Ha, glad to hear it!",
            "That's great, let's get this done quickly.",
            "Lovely, happy to help with that.",
        ),
        "sad": (
            "I'm sorry to hear that, let's see what we can do.",
            "That sounds really hard, I'll do my best for you.",
            "Don't worry, we'll get this sorted together.",
        ),
        "neutral": (
            "Sure, I can look at that.",
            "No problem, let's take a look.",
            "Okay, I can help with that.",
        ),
    },
    opener={
        "angry": (
            "I'm really fed up, this is the third time I've had to ring about this.",
            "Listen, I'm absolutely furious right now.",
            "This is completely unacceptable and I want it fixed today.",
            "I've been on hold forever and frankly I'm livid.",
            "Nobody over there seems to have a clue what they're doing.",
        ),
        "happy": (
            "Hi! Hope you're having a nice day, I've got a quick question.",
            "Oh great, a real person, that's lovely.",
            "Good morning! I'm in a cheerful mood, so no rush at all.",
            "Hello there! I'm calling with what's hopefully an easy one.",
            "Hi, thanks for picking up so quickly, that's brilliant.",
        ),
        "sad": (
            "Hi, sorry, it's been a really rough week.",
            "I don't really know what to do anymore, to be honest.",
            "I'm sorry to bother you, I'm just feeling pretty overwhelmed.",
            "Hello. I've had some bad news lately and now this as well.",
            "I'm a bit down about all this, if I'm honest.",
        ),
        "neutral": (
            "Hi, I'm calling about my account.",
            "Hello, I have a question about my service.",
            "Hi there, I need some help with something.",
            "Good morning, I'm ringing about an issue.",
            "Hello, I wanted to check something with you.",
        ),
    },
    reaction={
        "angry": (
            "That's what the last person said, and nothing happened!",
            "Why does this always take so long? It's ridiculous.",
            "I'm sick of excuses, just fix it.",
            "You have got to be kidding me.",
            "This is a joke, honestly, a complete joke.",
        ),
        "happy": (
            "Oh, that's fantastic, thank you!",
            "Wonderful, that's exactly what I was hoping for.",
            "Perfect, you're making this so easy.",
            "Brilliant, I love that.",
            "Oh that's great news!",
        ),
        "sad": (
            "Oh. Okay, I suppose that's how it is.",
            "I was really hoping it would be quicker than that.",
            "That's a shame. I can't really afford that right now.",
            "Right. I just feel like nothing goes my way lately.",
            "Okay. Sorry, I'm just very tired.",
        ),
        "neutral": (
            "Okay, I see.",
            "Alright, that makes sense.",
            "Sure, go ahead.",
            "Right, understood.",
            "Okay, fair enough.",
        ),
    },
    thanks={
        "angry": (
            "Fine. It had better actually work this time.",
            "About time. I shouldn't have had to chase this.",
            "Okay. I'm still not happy about any of this.",
        ),
        "happy": (
            "Amazing, thank you so much, you've made my day.",
            "That's wonderful, I really appreciate your help.",
            "Fantastic, thanks a million!",
        ),
        "sad": (
            "Thank you. That does help a little.",
            "Okay. Thanks for being patient with me.",
            "I appreciate it. It's been a hard month.",
        ),
        "neutral": (
            "Okay, thank you.",
            "Great, thanks for that.",
            "Alright, that works for me.",
        ),
    },
    goodbye={
        "angry": ("Yeah, bye.", "Whatever. Goodbye.", "Right. Bye."),
        "happy": ("You too! Bye!", "Thanks again, bye bye!", "Have a great day yourself!"),
        "sad": ("Okay. Bye.", "Thanks. Goodbye.", "Bye then."),
        "neutral": ("Thanks, bye.", "Okay, goodbye.", "You too, bye."),
    },
    trailing=("Okay.", "Oh. Right.", "Is that it? Okay then."),
    topics=(
        Topic(
            problem=(
                "I was charged twice for my bill this month, and the money has already gone out.",
                "There are two identical payments on my statement and I only owe one.",
            ),
            steps=(
                "I can see two payments of the same amount on the fifth.",
                "The second one is a system duplicate, so I'm reversing it now.",
                "The refund request has gone through.",
            ),
            question=("How long until the money comes back?", "When will I see that refund?"),
            answer=("It usually shows up within three to five working days.",),
        ),
        Topic(
            problem=(
                "My internet keeps cutting out every evening, and I work from home.",
                "The broadband drops every few minutes and it's driving me up the wall.",
            ),
            steps=(
                "I can see a lot of disconnections on your line over the past week.",
                "I'm going to reset the connection from our side.",
                "If it happens again, an engineer will check the cabling.",
            ),
            question=("Will I need to be home for the engineer?",),
            answer=("Only if they need to come inside, and they'll ring an hour before.",),
        ),
        Topic(
            problem=(
                "I ordered a washing machine two weeks ago and it still hasn't arrived.",
                "My delivery was due last Tuesday and nobody has turned up.",
            ),
            steps=(
                "I can see the order, and it's been sitting at the depot since Monday.",
                "I've flagged it as urgent with the courier.",
                "They've given me a new delivery date of Thursday.",
            ),
            question=("Can they come in the morning?", "Will I get a time slot?"),
            answer=("I've asked for a morning slot, between eight and twelve.",),
        ),
        Topic(
            problem=(
                "I can't log into my online account, it keeps saying it's locked.",
                "The app won't let me sign in anymore, it just says access denied.",
            ),
            steps=(
                "It looks like there were too many wrong password attempts.",
                "I've unlocked it and sent a reset link to your email.",
                "That link is valid for one hour.",
            ),
            question=("What if the email doesn't come through?",),
            answer=("Check your spam folder, and if it's not there I can send another.",),
        ),
        Topic(
            problem=(
                "I want to cancel my subscription, I'm just not using it anymore.",
                "I'd like to close my plan at the end of the month please.",
            ),
            steps=(
                "Right, you're on the monthly plan with no contract.",
                "There's no cancellation fee since you're out of the minimum term.",
                "I've set it to end when this billing period finishes.",
            ),
            question=("Will I get some kind of confirmation?",),
            answer=("Yes, an email with the cancellation reference is on its way.",),
        ),
        Topic(
            problem=(
                "The parcel I got today has the wrong thing in it, I ordered a blue kettle.",
                "You sent me a green kettle instead of the blue one I paid for.",
            ),
            steps=(
                "I can see the order was packed with the wrong colour.",
                "I'll arrange a free collection for the green one.",
                "A blue kettle will go out to you tomorrow.",
            ),
            question=("Do I need to print a label?",),
            answer=("No, the driver will bring the label with them.",),
        ),
        Topic(
            problem=(
                "I need to move my flight to next Friday because of a family matter.",
                "Something has come up and I can't fly on the date I booked.",
            ),
            steps=(
                "I can see your booking for the twelfth, in the morning.",
                "There's a seat on the Friday flight at the same time.",
                "I've moved you across and waived the change fee.",
            ),
            question=("Is my luggage allowance the same?",),
            answer=("Yes, you still have one checked bag included.",),
        ),
        Topic(
            problem=(
                "My energy bill this quarter is nearly double what it normally is.",
                "The latest bill is way higher than usual and nothing has changed at home.",
            ),
            steps=(
                "The bill was based on an estimated reading, not a real one.",
                "If you give me today's meter reading I'll redo the calculation.",
                "With the real reading, the bill comes down by about forty pounds.",
            ),
            question=("Will you send me a corrected bill?",),
            answer=("Yes, a revised bill will be emailed to you tonight.",),
        ),
    ),
)

HELDOUT = PhraseBank(
    companies=(
        "Riverstone Telecom",
        "Goldleaf Credit Union",
        "Harbourline Ferries",
        "Evergreen Gas and Power",
        "Lumen Fibre",
        "Trident Home Cover",
        "Kestrel Rail",
        "Willow Pharmacy",
    ),
    agent_names=("Priya", "Callum", "Ingrid", "Mateo", "Yusuf", "Harriet", "Keiko", "Declan"),
    customer_names=(
        "Margaret Ellis",
        "David Okafor",
        "Chloe Martin",
        "Ivan Novak",
        "Fatima Khan",
        "Peter Lindqvist",
        "Rosa Alvarez",
        "Kevin Byrne",
    ),
    greetings=(
        "Hey there, it's {agent} over at {company}. What brings you to us today?",
        "Hi, {company} service team, {agent} picking up. What are we looking at?",
        "Good day, {agent} at {company} here. Tell me how I can be useful.",
        "Hello and good morning, this is the {company} line, my name's {agent}.",
        "Hiya, {agent} with {company}. Lovely to hear from you, what's up?",
        "Afternoon, {company}, {agent} answering. Who do I have the pleasure of talking to?",
        "Hello, you're connected to {agent} at {company}. What would you like a hand with?",
        "Greetings from {company}, {agent} here. How are things, and what can I look into?",
        "Good morning, {agent} from the {company} care team. What's the reason for ringing?",
        "Hi there, {company}, it's {agent}. How's your day going, and what do you need?",
    ),
    no_greeting=(
        "Mm, yep, go on.",
        "Okay, talk to me.",
        "Yeah, what now?",
        "So, what's happened?",
        "Right, shoot.",
        "Okay, and the problem is?",
    ),
    disclosures=(
        "Heads up, I'm required to tell you that we keep an audio copy of this chat for review.",
        "Everything we say today is kept as an audio recording for quality checks.",
        "Our phone conversations are saved and may be listened to by a supervisor.",
        "As a reminder, this session is being taped for training and compliance.",
        "I'll just let you know that a recording of our conversation is being made.",
        "We keep audio of all customer conversations, including this one.",
        "Just a notice, a supervisor may listen back to a recording of this later.",
        "By staying on the line you agree to us recording what we discuss.",
    ),
    identity=(
        (
            "To make sure I'm talking to the account holder, what's your birthday and address?",
            "The {dob}, and I live at Twenty Mill Lane.",
        ),
        (
            "I've just texted you a six digit code, could you read that back to me?",
            "Yes, it's {digits} {digits}.",
        ),
        (
            "Can you spell out your surname and tell me your house number?",
            "It's {customer}, and I'm at number twelve.",
        ),
        (
            "What's the memorable word you set up when you joined?",
            "I think it was sunflower.",
        ),
        (
            "Let me make sure it's really you. What are the final four numbers on your bank card?",
            "They're {digits}.",
        ),
        (
            "Would you mind confirming the name on the account and the year you were born?",
            "{customer}, and I was born on the {dob}.",
        ),
        (
            "Before anything else, what's the reference printed at the top of your letter?",
            "It says {digits} {digits} {digits}.",
        ),
        (
            "Which email did you sign up with, and what's the zip code there?",
            "{first} at postbox dot net, and the zip is {code}.",
        ),
    ),
    identity_ok=(
        "Brilliant, that lines up with what I have.",
        "Got it, you're all set on that side.",
        "Okay, those details check out.",
        "Super, I've found you.",
        "Cheers, that's the one.",
    ),
    closings=(
        "Lovely, I think we're done here. Cheers for ringing, and look after yourself.",
        "Before I let you go, any other questions on your mind? If not, all the best, bye.",
        "Right then, that's us finished. Enjoy your afternoon and speak soon.",
        "Okay, that wraps things up. Thanks for bearing with me, and goodbye.",
        "That should be everything. You take care now, {first}, bye.",
        "I'll leave you to your day then. Thanks for reaching out to {company}.",
        "All sorted. It was a pleasure, have a good one.",
        "If nothing else comes up, we're all done. Bye for now.",
    ),
    no_closing=(
        "Okay, it's submitted.",
        "That's gone through now.",
        "The request is in the queue.",
        "Alright, I've saved that.",
        "So that's changed on the account.",
        "Done on my side.",
    ),
    forbidden=(
        "Frankly, I'm not paid enough to deal with this.",
        "Quit complaining, it won't change anything.",
        "That's the dumbest thing I've heard all week.",
        "Seriously, use your brain for a second.",
        "Bloody hell, how many times do I have to say it?",
        "Nobody here gives a damn about your refund.",
        "Go and bother someone else with that.",
        "Ugh, you're wasting my time.",
        "Maybe try reading the instructions like a grown up.",
        "Calm down, you're being ridiculous.",
        "I'm not explaining it again, it's not rocket science.",
        "Whatever, sort it out on your own then.",
    ),
    hold=(
        "Just a sec, I'm digging into the records.",
        "Let me have a look, won't be long.",
        "Hold on while I bring that up on screen.",
        "Bear with me, the system is a bit slow today.",
        "Let me see what's on file.",
    ),
    resume=(
        "Okay, found it.",
        "Right, here we go.",
        "So, I've got the details in front of me now.",
        "Okay, it's on screen.",
        "Right, I see the problem.",
    ),
    interrupt=(
        "Yeah, yeah, I get it, I get it, let me stop you there for a moment",
        "Okay, hang on a second, I think I already know what this is about",
        "Wait, wait, let me jump in here because I can see the cause already",
        "Alright, alright, I follow, I follow, let me have a go at fixing it",
    ),
    empathy={
        "angry": (
            "I really get why you're upset, and I apologise.",
            "That's a rubbish experience, I'm sorry.",
            "You've every right to be annoyed about that.",
        ),
        "happy": (
            "Ah, love the energy!",
            "Nice, let's make it a quick one then.",
            "Sounds good, I'm on it.",
        ),
        "sad": (
            "Oh, I'm sorry you're going through that.",
            "That's a lot to deal with, let me take this one off your plate.",
            "No need to apologise at all, we'll work it out.",
        ),
        "neutral": (
            "Okay, let me check that.",
            "Sure thing, I'll have a look.",
            "Alright, let's get into it.",
        ),
    },
    opener={
        "angry": (
            "Right, I've had enough of this, honestly.",
            "I'm so angry I can barely speak, this has gone on for weeks.",
            "Your company has messed me around yet again.",
            "I want to make a complaint, because this is outrageous.",
            "I've been passed around five departments and I'm fuming.",
        ),
        "happy": (
            "Hiya! What a lovely sunny day, anyway, small thing for you.",
            "Hello! I'm in such a good mood, I just got engaged.",
            "Oh hi, brilliant, I actually got through!",
            "Hello, hope you're well! I'm ringing with some happy news and a question.",
            "Hey! Honestly, you lot have been great so far.",
        ),
        "sad": (
            "Hello. Sorry, I'm not having a good day at all.",
            "I'm just so tired of everything going wrong.",
            "My mum passed away last month, and I'm trying to sort her things out.",
            "Hi. I feel a bit lost with all this, sorry.",
            "I've been really low lately and this has made it worse.",
        ),
        "neutral": (
            "Hi, I've got a query about my account.",
            "Hello, I'm phoning about a problem with my service.",
            "Hi, I need to ask about something.",
            "Hello, I'm calling to get something fixed.",
            "Morning, I'd like some help with an issue.",
        ),
    },
    reaction={
        "angry": (
            "I've heard that one before, don't fob me off!",
            "That's absolutely useless, I needed it fixed yesterday.",
            "Unbelievable. Every single time.",
            "Are you serious? That's pathetic.",
            "Don't give me that, I'm paying for a service here!",
        ),
        "happy": (
            "Oh amazing, that's really kind.",
            "Ha, perfect, couldn't be better.",
            "Fab, that's brilliant news.",
            "Oh lovely, you're a star.",
            "Great stuff, I'm delighted.",
        ),
        "sad": (
            "Oh dear. I didn't think it would be this complicated.",
            "I suppose I'll just have to wait then.",
            "Okay. It's just one more thing on the pile.",
            "I really can't cope with much more of this.",
            "That's disappointing, but okay.",
        ),
        "neutral": (
            "Alright, noted.",
            "Okay, that's fine.",
            "Sure, makes sense.",
            "Got it.",
            "Okay, go on.",
        ),
    },
    thanks={
        "angry": (
            "Hmph. We'll see if it actually happens.",
            "Fine, but I'm putting this in writing.",
            "Right. Next time I'm switching providers.",
        ),
        "happy": (
            "You're a lifesaver, thank you ever so much!",
            "Brilliant, that's really made my afternoon.",
            "Oh thank you, that was so painless!",
        ),
        "sad": (
            "Thanks. Sorry for being so quiet, it's been hard.",
            "Okay. That's one less worry, I suppose.",
            "Thank you for being kind about it.",
        ),
        "neutral": (
            "Okay, cheers.",
            "Right, thanks.",
            "That's fine, thank you.",
        ),
    },
    goodbye={
        "angry": ("Yeah. Bye.", "Goodbye.", "Mm. Bye."),
        "happy": ("Cheers, bye now!", "Thanks, you too, bye!", "Take care, bye!"),
        "sad": ("Okay. Bye bye.", "Bye.", "Alright. Bye now."),
        "neutral": ("Cheers, bye.", "Okay, bye.", "Thanks, bye then."),
    },
    trailing=("Okay then.", "Erm, okay.", "Oh. Is that all? Right."),
    topics=(
        Topic(
            problem=(
                "I got a huge roaming charge after a week in Spain, but I had a travel add on.",
                "My phone bill has a hundred pounds of roaming fees from my holiday.",
            ),
            steps=(
                "The travel add on was activated a day after you landed.",
                "So the first day was charged at the standard roaming rate.",
                "I've credited back the charges for that day.",
            ),
            question=("So will next month's bill be normal?",),
            answer=("Yes, the credit comes off your next bill automatically.",),
        ),
        Topic(
            problem=(
                "I've lost my bank card somewhere in town and I'm worried about it.",
                "My debit card is missing, I think it fell out of my pocket.",
            ),
            steps=(
                "I can see no unusual payments since yesterday afternoon.",
                "I've frozen the old card so nobody else can use it.",
                "A replacement will arrive in three to five working days.",
            ),
            question=("Can I still take cash out meanwhile?",),
            answer=("Yes, with your ID at any of our branches.",),
        ),
        Topic(
            problem=(
                "My fridge stopped cooling and it's still under the repair plan.",
                "The freezer is defrosting all over the floor and it's only a year old.",
            ),
            steps=(
                "The appliance is covered until next spring.",
                "I can book a repairer for you.",
                "The earliest slot is Wednesday afternoon.",
            ),
            question=("Do I pay anything for the visit?",),
            answer=("No, parts and labour are included in your cover.",),
        ),
        Topic(
            problem=(
                "I'm moving house next month and need my service moved too.",
                "We're moving to a new flat and I want everything transferred.",
            ),
            steps=(
                "The new address can get the same package.",
                "I've scheduled the switch for the day you move.",
                "The router stays the same, just plug it in there.",
            ),
            question=("Is there a charge for moving?",),
            answer=("No, moving is free for existing customers.",),
        ),
        Topic(
            problem=(
                "My card keeps getting declined when I try to pay online.",
                "Every online payment fails even though there's money in the account.",
            ),
            steps=(
                "The card was blocked by our fraud checks on Saturday.",
                "I've removed the block now.",
                "Try the payment again in about ten minutes.",
            ),
            question=("Why was it blocked in the first place?",),
            answer=("A payment to a new overseas shop looked unusual to the system.",),
        ),
        Topic(
            problem=(
                "There's water leaking from the meter outside my house.",
                "The pavement by my front gate is flooded from your pipe.",
            ),
            steps=(
                "That pipe belongs to us, so the repair is our job.",
                "I've raised an urgent leak job.",
                "A crew should be out by this evening.",
            ),
            question=("Do I need to turn anything off?",),
            answer=("No, just keep clear of the area until they arrive.",),
        ),
        Topic(
            problem=(
                "My train was cancelled yesterday and I want my money back.",
                "I missed a meeting because the service was cancelled and I paid for a return.",
            ),
            steps=(
                "That train was cancelled because of a signal fault.",
                "You're entitled to a full refund of the ticket.",
                "I've submitted it back to the card you paid with.",
            ),
            question=("How long does the refund take?",),
            answer=("It normally lands within a week.",),
        ),
        Topic(
            problem=(
                "My prescription was meant to be ready today but the shop says it isn't.",
                "I came to collect my tablets and they said there's no record of the order.",
            ),
            steps=(
                "The surgery sent it through to a different branch.",
                "I've asked that branch to transfer it to your usual one.",
                "It will be ready for collection after two o'clock.",
            ),
            question=("Can someone else pick it up for me?",),
            answer=("Yes, as long as they know your name and address.",),
        ),
    ),
)

BANKS: dict[str, PhraseBank] = {"train": TRAIN, "heldout": HELDOUT}


def get_bank(name: str) -> PhraseBank:
    """The phrase bank called `name` ("train" or "heldout")."""
    try:
        return BANKS[name]
    except KeyError:
        raise ValueError(
            f"unknown phrase bank {name!r}: set synth.phrase_bank to one of {sorted(BANKS)}"
        ) from None


def all_sentences(bank: PhraseBank) -> list[str]:
    """Every template string in a bank (for overlap tests against scorecards)."""
    out: list[str] = []
    for value in vars(bank).values():
        _collect(value, out)
    return out


def _collect(value, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, Topic):
        for v in vars(value).values():
            _collect(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _collect(v, out)
    elif isinstance(value, tuple | list):
        for v in value:
            _collect(v, out)
